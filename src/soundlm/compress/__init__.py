"""Language models as lossless compressors (Deletang et al., "Language Modeling Is Compression").

- `coder.py`: constriction's range coder and the integer-frequency rules both directions share.
- `container.py`: the `.slmc` file: header (magic, version, mode, model hash, rate, channels,
  length, CRC) and code streams.
- `lpc.py`, `sample_model.py`, `lossless.py`: lossless mode, 16-bit (or 8-bit) PCM coded
  sample by sample: block LPC + a small integer MLP giving each sample's distribution.
- `trainer.py`: `soundlm train compressor` (the sample model on a corpus).
- `tokens.py`: token mode, the codec's RVQ codes and semantic ids coded with the AudioLM stage LMs.
- `files.py`: many files and folders, progress bar, a bad file skipped and logged.
"""
