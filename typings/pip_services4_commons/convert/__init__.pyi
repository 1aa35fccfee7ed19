from .ArrayConverter import ArrayConverter as ArrayConverter
from .BooleanConverter import BooleanConverter as BooleanConverter
from .DateTimeConverter import DateTimeConverter as DateTimeConverter
from .DoubleConverter import DoubleConverter as DoubleConverter
from .FloatConverter import FloatConverter as FloatConverter
from .IntegerConverter import IntegerConverter as IntegerConverter
from .JsonConverter import JsonConverter as JsonConverter
from .LongConverter import LongConverter as LongConverter
from .MapConverter import MapConverter as MapConverter
from .RecursiveMapConverter import RecursiveMapConverter as RecursiveMapConverter
from .StringConverter import StringConverter as StringConverter
from .TypeCode import TypeCode as TypeCode
from .TypeConverter import TypeConverter as TypeConverter
from .UTC import UTC as UTC

__all__ = [
    "UTC",
    "ArrayConverter",
    "BooleanConverter",
    "DateTimeConverter",
    "DoubleConverter",
    "FloatConverter",
    "IntegerConverter",
    "JsonConverter",
    "LongConverter",
    "MapConverter",
    "RecursiveMapConverter",
    "StringConverter",
    "TypeCode",
    "TypeConverter",
]
