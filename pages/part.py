"""Only for a link opened as a fresh server's very first request.

Because ``pages/`` sits beside ``app.py``, Streamlit 1.67 serves the first run of each process in its
legacy multipage mode, which knows only the scripts directly in this folder: without this file the
link would get a "Page not found" dialog. Running ``app.py`` hands over to its ``st.navigation``,
which opens the real page (in ``pages/views/``) with the link's settings; later runs never come here.
"""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).resolve().parent.parent / "app.py"))
