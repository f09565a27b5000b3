// Copies the microphone's first channel to the page, block by block (128 samples at the context's rate).
class SoundlmRecorder extends AudioWorkletProcessor {
  process(inputs) {
    const input = inputs[0];
    if (input && input.length) this.port.postMessage(input[0].slice(0));
    return true;
  }
}
registerProcessor("soundlm-recorder", SoundlmRecorder);
