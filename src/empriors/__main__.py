from empriors.cli import main

raise SystemExit(main())
