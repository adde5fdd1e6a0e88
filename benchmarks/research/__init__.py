"""Research code that trained no shipped model: distillation of an EmoNet student from an IER
teacher (``adapt_distill.py``, docs/benchmarks.md §2). The emoadapt package never imports it.

    config.py    DistillConfig: AdaptConfig plus the teacher's options; build_student
    bank.py      a fixed bank of views the teacher labels once (kd_mode=bank)
    distill.py   fresh crops the teacher labels at every step (kd_mode=online)
    hints.py     feature-map hints for online distillation
    train.py     adapt_with_teacher: the entry point that picks bank or online
"""
