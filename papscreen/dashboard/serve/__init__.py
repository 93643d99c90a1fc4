"""The script that ``streamlit run`` serves (:data:`papscreen.dashboard.launch.APP_PATH`)."""
