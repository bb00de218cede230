"""python -m rtcode: the same as the rtcode command."""

from rtcode.cli import main

if __name__ == "__main__":
    main()
