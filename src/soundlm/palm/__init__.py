"""AudioPaLM groundwork: one causal LM for text and speech (ASR, TTS, AST, S2ST, multi-step).

    vocab.py     combined vocabulary (text ids + task tags + semantic + acoustic ids)
    tasks.py     task examples -> token sequences with target-only loss labels
    data.py      task examples from a token store of parallel speech (pairs by text_id)
    model.py     extend a Hugging Face causal LM with the new rows; palm model folders
    text_lm.py   a tiny text LM + tokenizer trained offline (for text-init vs scratch)
    loop.py      the resumable training loop
    train.py     `soundlm train palm`
    infer.py     ASR / translation / TTS decoding, semantic ids -> audio via AudioLM stages
    metrics.py   WER / CER / BLEU
    evaluate.py  `soundlm eval palm`: every task on a split (held-out voices), markdown + JSON
"""
