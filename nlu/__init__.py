"""careline NLU.

Two sides, one package: `nlu.runtime` runs inside the Rasa runtime (.venv-nlu, Python 3.10)
and is the only code that imports rasa; everything else here (client, training driver,
process supervisor, text utilities) runs in the gateway and never imports rasa.
"""
