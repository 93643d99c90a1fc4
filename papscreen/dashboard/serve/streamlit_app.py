"""The script ``streamlit run`` serves: it draws the dashboard with :func:`papscreen.dashboard.app.main`.

It sits in a folder of its own on purpose. Streamlit treats a ``pages/`` folder beside its main script as a
legacy multipage app and, until the first ``st.navigation`` call of the server process, serves every file in it
as a page of its own: a fresh server opened at ``/worklist`` would run ``papscreen/dashboard/pages/worklist.py``
by itself, without the sign-in gate or the navigation of ``app.py``. No ``pages/`` folder is beside this file.
"""

from __future__ import annotations

from papscreen.dashboard.app import main

if __name__ == "__main__":  # Streamlit runs its script as __main__; importing this module draws nothing
    main()
