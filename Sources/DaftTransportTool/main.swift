print("daft-transport")
