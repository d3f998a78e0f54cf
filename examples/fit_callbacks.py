"""FxP-QNet inside a `model.fit` loop, on your own model and data: a tutorial.

    .venv/bin/python examples/fit_callbacks.py                 # about a minute on 2 cores
    .venv/bin/python examples/fit_callbacks.py --epochs 5 --samples 300 --max-bits 8   # quick look

What it shows, step by step:

1. Your own small tf_keras CNN, trained the usual way on scikit-learn's 8x8 digits (labels used
   here, and only here).
2. FxP-QNet driven by Keras callbacks. `PrecisionSearch` builds the fake-quant (tfmot) model once;
   `qmodel.fit(x_calib, teacher_outputs, callbacks=[PrecisionAdaptation(search)])` then lowers bit
   widths between epochs. The calibration data is *unlabeled*: the "labels" fit sees are the float
   model's own predictions (self-distillation), `DistillationLoss` measures KL(teacher || student)
   and `Agreement` the top-1 agreement with the teacher. The float weights are frozen
   (`qmodel.trainable = False`), so this stays post-training; fit's epochs are measurement +
   adaptation rounds, and the callback stops training when the search is done.
3. The policy summary (bits and memory of every data structure), then held-out accuracy of the
   float and the fixed-point model, and the policy written to JSON for `fxpq export`.

The one-call equivalent is `fxpq_keras.FxPQNet(0.01).quantize(model, x_calib)` (same options and
seed, same policy), and `model.fit(..., callbacks=[fxpq_keras.FxPQNetCallback(x_calib)])` runs it
when your own training ends, with no search internals. This script is for people who want the loop
in their own hands, e.g. to add their own callbacks (logging, early stopping, checkpoints) next to
the search.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fxpq_keras  # noqa: E402,F401  (import before TensorFlow: it selects tf_keras, which tfmot needs)
from fxpq_keras._tf import keras  # noqa: E402
from fxpq_keras.callbacks import Agreement, DistillationLoss, PrecisionAdaptation, SearchProgress  # noqa: E402
from fxpq_keras.search import PrecisionSearch, SearchOptions  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--epochs", type=int, default=40, help="training epochs of the float model")
    ap.add_argument("--samples", type=int, default=400,
                    help="unlabeled calibration samples for the search (at most 400)")
    ap.add_argument("--max-drop", type=float, default=0.01, help="max top-1 drop against the float model")
    ap.add_argument("--max-bits", type=int, default=16, help="bit width every data structure starts from")
    ap.add_argument("--steps-per-epoch", type=int, default=8, help="search steps the callback takes per epoch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "runs" / "fit_callbacks"), help="folder for policy.json and the model")
    return ap.parse_args(argv)


def load_data(seed: int) -> dict[str, np.ndarray]:
    """sklearn's 1797 8x8 digits: 1000 to train, 400 unlabeled for calibration, the rest held out."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]  # [N, 8, 8, 1] in [0, 1]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return {"x_train": x[:1000], "y_train": y[:1000], "x_calib": x[1000:1400],  # no labels: never y[1000:1400]
            "x_test": x[1400:], "y_test": y[1400:]}


def build_model() -> keras.Model:
    """A user's own small CNN; any model of the supported layers (README) works the same way."""
    return keras.Sequential([
        keras.Input((8, 8, 1), name="digit"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.Conv2D(16, 3, activation="relu", name="conv2"),
        keras.layers.MaxPooling2D(2, name="pool"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(32, activation="relu", name="fc"),
        keras.layers.Dense(10, activation="softmax", name="classifier"),
    ], name="my_digits_cnn")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(args.seed)

    # 1. The float model, trained the ordinary way (the only place labels are used).
    print(f"[1] training the float model for {args.epochs} epochs on {len(data['x_train'])} labeled digits")
    keras.utils.set_random_seed(args.seed)
    model = build_model()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data["x_train"], data["y_train"], epochs=args.epochs, batch_size=32, verbose=0)
    float_acc = model.evaluate(data["x_test"], data["y_test"], verbose=0)[1]
    print(f"    float test accuracy {float_acc:.2%}")

    # 2. FxP-QNet in a fit loop on unlabeled calibration data.
    x_calib = data["x_calib"][: args.samples]
    options = SearchOptions(max_accuracy_drop=args.max_drop, max_bits=args.max_bits, samples=args.samples,
                            seed=args.seed)
    search = PrecisionSearch(model, x_calib, options=options)  # builds the fake-quant model once
    qmodel = search.qmodel
    qmodel.trainable = False  # float weights frozen: post-training; only the formats change

    # The student is measured against the teacher: `search.targets` are the float model's own output
    # distributions on the calibration data. fit trains on the decision third of it; the callback
    # checks the budget on the other two thirds, which fit never sees.
    decide = search.decision_index
    teacher = search.targets[decide]
    qmodel.compile(loss=DistillationLoss(from_logits=not search.probabilities), metrics=[Agreement()])
    print(f"[2] FxP-QNet: {len(x_calib)} unlabeled samples ({len(decide)} decide, "
          f"{len(search.check_index)} check the {args.max_drop:.1%} budget), every data structure starts at "
          f"{args.max_bits} bits")

    def show(epoch: int, logs: dict) -> None:
        print(f"    epoch {epoch + 1:3d}: KL {logs['loss']:.2e}  agreement {logs['agreement']:.2%}  "
              f"average bits {logs['fxpq_bits']:.2f}  memory {logs['fxpq_memory_x']:.2f}x smaller  "
              f"check agreement {logs['fxpq_agreement']:.2%}")

    progress = SearchProgress(search)
    history = qmodel.fit(
        search.calibration.x[decide], teacher, batch_size=len(decide), epochs=1000, verbose=0, shuffle=False,
        callbacks=[PrecisionAdaptation(search, steps_per_epoch=args.steps_per_epoch),  # lowers bits, stops fit
                   progress,                                                       # keeps the trajectory
                   keras.callbacks.LambdaCallback(on_epoch_end=show)])           # prints one line per epoch
    epochs_run = len(history.history["loss"])

    # 3. The result: the policy summary, held-out accuracy, and the policy for `fxpq export`.
    policy = search.state.policy
    print(f"[3] search done after {epochs_run} epochs, {search.evaluations} network evaluations: "
          f"{search.state.message}")
    print()
    print(policy.summary())
    print()
    fixed = qmodel.predict(data["x_test"], verbose=0)
    floats = model.predict(data["x_test"], verbose=0)
    fixed_acc = float(np.mean(fixed.argmax(-1) == data["y_test"]))
    agree = float(np.mean(fixed.argmax(-1) == floats.argmax(-1)))
    print(f"held-out ({len(fixed)} digits): float accuracy {float_acc:.2%}, fixed-point accuracy {fixed_acc:.2%}, "
          f"agreement with the float model {agree:.2%}")
    model_path, policy_path = out / "my_digits_cnn.keras", out / "policy.json"
    model.save(model_path)
    policy.to_json(str(policy_path))
    print(f"wrote {model_path} and {policy_path}; next: fxpq export {model_path} {policy_path} -o model.tflite")
    return 0 if search.state.done and progress.history else 1


if __name__ == "__main__":
    sys.exit(main())
