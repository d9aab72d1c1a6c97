"""The landing page starts and shows the loaded model's name and shape."""

from streamlit.testing.v1 import AppTest


def test_landing_page_shows_model_name_and_shape() -> None:
    app = AppTest.from_file("../app.py", default_timeout=120).run()
    assert not app.exception
    assert any("SmolLM2-135M-Instruct" in header.value for header in app.subheader)
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics == {
        "Layers": "30",
        "Attention heads per layer": "9",
        "Head size": "64",
        "MLP neurons per layer": "1536",
        "Hidden size": "576",
    }
