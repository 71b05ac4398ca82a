import sys

from iotdr.agent.main import main

sys.exit(main())
