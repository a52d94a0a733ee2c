"""A trained model outside its run: the saved-model folder (`saved_model`, rebuilt without
the training data through `stand_in`), and scoring new rows (`predict`, with the input
checks of `predict_input`)."""

from recbole_lda.inference.predict import Predictor, predict_file, predict_frame

__all__ = ["Predictor", "predict_file", "predict_frame"]
