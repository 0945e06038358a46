"""What every test may count on, however the suite was started."""

from __future__ import annotations

import signal

# A shell starts a background job (``make test &``) with SIGINT ignored, which every process it starts inherits:
# Ctrl-C would reach no test. A handled signal is reset for the processes this one starts, so they get it too.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
