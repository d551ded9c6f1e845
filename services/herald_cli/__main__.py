from herald_cli.main import main

main()
