"""nairstd: reference reproduction of Na-IRSTD (native-resolution feature selection and fusion
for infrared small target detection)."""

__version__ = "0.1.0"
