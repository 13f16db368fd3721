"""Train the shiftedMNIST classifier with or without IFM; see `python train.py --help`."""
import sys

from experiment.run import main

if __name__ == "__main__":
    sys.exit(main())
