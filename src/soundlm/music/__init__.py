"""Music: attribute analysers (key, tempo, instrument) over rendered or generated clips."""
