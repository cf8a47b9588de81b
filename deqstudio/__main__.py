from deqstudio.cli import main

raise SystemExit(main())
