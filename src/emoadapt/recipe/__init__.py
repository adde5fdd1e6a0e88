"""``emoadapt train``: make a FusionNet model from data, end to end, from a recipe file.

Steps (each writes its result into the run folder and is skipped when that result exists, so an
interrupted run resumes where it stopped):

1. ``face``     the face (FER) branch: trained with ``train-fer`` or taken from a weights file
                (``face.safetensors``).
2. ``start``    FusionNet = face branch ⊕ ImageNet EfficientNet-Lite scene branch, fresh head.
3. ``encode``   the frozen branches' pooled features (N, C_face + C_scene) of every labelled image
                in ``views`` training views (the product's own input fit, its mirror image, then
                seeded random resized crops) and of the source faces (plain and mirrored);
                cached in ``features/`` in chunks (an interrupted encoding resumes by chunk).
4. ``head``     the head trained on the cache with the paper's loss
                ``CE(target) + α·CE(source faces, mapped) + λ·D`` (:func:`emoadapt.adapt.train.adapt`,
                cached protocol): per fold for ``--cv``, or on every labelled image for the final
                model, for the recipe's fixed number of epochs.
5. ``calibrate`` temperature and OOD threshold from the CV folds' out-of-fold outputs (the final
                model has no held-out images of its own).
6. ``affect``   valence / arousal / 7-way distribution heads (Emotion6 ground truth only).
7. ``ship``     ``model.safetensors`` (fp16) + ``model.calibration.json`` + ``model.affect.safetensors``
                + ``model.md`` (the card) + ``model.json`` (the registry entry to copy into
                ``src/emoadapt/weights/registry.json``).

A test image is scored as ``predict`` scores it: the input fit, then (``tta = "flip"``) the softmax
averaged over the image and its mirror image.


Modules, in the order of the steps: :mod:`.config` (the recipe file), :mod:`.inputs` (images,
folds, source faces), :mod:`.branches` (steps 1–2), :mod:`.features` (step 3), :mod:`.heads`
(step 4), :mod:`.cv` (cross-validation and the final fit), :mod:`.ship` (steps 5–7).
"""

from __future__ import annotations

from .config import Recipe, RecipeError, load_recipe, recipe_from_dict
from .cv import cross_validate, cv_table, train_final
from .ship import install, ship

__all__ = ["Recipe", "RecipeError", "cross_validate", "cv_table", "install", "load_recipe", "recipe_from_dict",
           "ship", "train_final"]
