from enum import Enum

class TypeCode(Enum):
    Unknown = 0
    String = 1
    Boolean = 2
    Integer = 3
    Long = 4
    Float = 5
    Double = 6
    DateTime = 7
    Duration = 8
    Object = 9
    Enum = 10
    Array = 11
    Map = 12
