// Audio thread of the microphone capture: hands each 128-sample block of the first input channel
// to the page (app.js), which converts it to 16-bit PCM and sends it in 0.5 s frames.
class PcmCapture extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) this.port.postMessage(channel.slice(0));
    return true;
  }
}
registerProcessor("pcm-capture", PcmCapture);
