"""Where training data comes from: synthetic sessions rendered from shipped face photos
(:mod:`.synth` composes them from :mod:`.scene`, :mod:`.people` and :mod:`.attacks`), the real material beside the project
(:mod:`.real_data`), crops cut by the scanner's own path (:mod:`.preprocess`), an archive's
sessions mined into soft labels (:mod:`.mine`), the splits (:mod:`.datasets`) and the check
of a data set before training (:mod:`.data_check`).
"""
