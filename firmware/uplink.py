# The uplink: sends the journal's unacknowledged records to the server in batches, over Wi-Fi
# or LTE-M, and advances the acknowledged position. It must never block the lamp or the
# journal: everything it does waits inside asyncio.
# STUB (issue 4 replaces it): imported and started by main.py exactly as the real one will be.


class Uplink:
    def __init__(self, cfg, journal, lamp):
        self.cfg = cfg
        self.journal = journal
        self.lamp = lamp

    async def run(self):
        """Send right after power-on, then at the heartbeat interval while lit."""

    async def flush(self):
        """Send whatever is unacknowledged now (e.g. a dying-gasp OFF record)."""
