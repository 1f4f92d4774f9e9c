from lexdesk.cli import main

main()
