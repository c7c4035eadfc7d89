from ruledsl.cli import main

main()
