"""Start the dashboard: ``python -m ui.serve app.py [streamlit options]`` is ``streamlit run`` with a head start.

The first page needs pandas and the app's own modules (not torch: saved results are read as numpy), about
half a second of imports on 2 cores, which plain ``streamlit run`` pays only when the first browser session
runs the script. Here a thread imports them as the
server starts (``ui.warm``), while the browser is still connecting and loading the page's scripts.
"""

from __future__ import annotations

import sys

from streamlit.web import cli

from ui import warm

if __name__ == "__main__":
    warm.start()
    sys.exit(cli.main(["run", *sys.argv[1:]]))
