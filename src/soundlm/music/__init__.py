"""Music: attribute analysers (key, tempo, instrument) over rendered or generated clips, the rewards built on
them, and preference tuning (DPO, preference pairs) of music LMs."""
