"""python -m rtcode: the same as the rtcode command."""

from .cli import main

if __name__ == "__main__":
    main()
