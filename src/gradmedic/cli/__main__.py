"""``python -m gradmedic.cli``: exactly the ``gradmedic`` command."""

from gradmedic.cli import main

if __name__ == "__main__":
    main()
