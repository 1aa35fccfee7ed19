# Not an Enum: a plain class of int constants. The library annotates levels as "LogLevel",
# but the values passed around are these ints, so the stubs type levels as int.
class LogLevel:
    Nothing: int
    Fatal: int
    Error: int
    Warn: int
    Info: int
    Debug: int
    Trace: int
