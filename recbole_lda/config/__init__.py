"""What a run is: RecBole's Config with our YAML defaults and checks (`configurator`), the
`--key=value` options and the declared type of every key (`options`), the models and
datasets a run can name (`registry`), and the `NAME[key=value;...]` entries of compare and
tune (`entries`). Importing `options`, `registry` or `entries` loads neither torch nor
RecBole; `configurator` does."""
