from callmap.cli import main

main()
