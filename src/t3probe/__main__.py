from t3probe.cli import main

raise SystemExit(main())
