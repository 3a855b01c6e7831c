"""``python -m gradmedic``: exactly the ``gradmedic`` command."""

from gradmedic.cli import main

if __name__ == "__main__":
    main()
