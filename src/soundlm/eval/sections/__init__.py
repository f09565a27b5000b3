"""The sections of `soundlm eval`, one module each: codec, lm, units, continuation, lexical, asr.

Each `eval_<name>` returns an `EvalSection` (soundlm.eval.report); `soundlm.eval.suite.run_all`
runs them all on one bundle."""
