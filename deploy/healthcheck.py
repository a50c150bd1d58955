#!/usr/bin/env python3
"""Container healthcheck: exit 0 only when GET /readyz answers 200 (the image has no curl)."""

import os
import sys
import urllib.request

host = os.environ.get("VISION_HOST", "127.0.0.1")
if host in ("", "0.0.0.0", "::"):
    host = "127.0.0.1"
url = f"http://{host}:{os.environ.get('VISION_PORT', '8000')}/readyz"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as error:  # URLError and HTTPError (503 not_ready) are OSErrors
    sys.stderr.write(f"{url}: {error}\n")
    sys.exit(1)
