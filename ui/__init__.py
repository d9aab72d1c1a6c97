"""The dashboard's shared UI layer: palette, state, sidebar, chart builders and exports.

Streamlit-dependent code lives here, never in ``emo_core``. Modules that only shape data
(``frames``, ``narrative``, ``selection``, ``palette``, ``charts``) import no streamlit and are unit-tested directly.
"""
