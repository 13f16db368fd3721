"""Use a trained model: its accuracy on shiftedMNIST, or its prediction for image files.

    python evaluate.py runs/ifm-seed0/best_digit.npz                 # test digit / texture accuracy
    python evaluate.py runs/ifm-seed0/best_digit.npz --split val --json
    python evaluate.py runs/ifm-seed0/best_digit.npz --image a.png b.jpg

See experiment/evaluate.py.
"""
import sys

from experiment.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
