"""Types of the C extension ``_copyrows.c`` (the COPY read loop)."""

WOULD_BLOCK: int
FULL: int
DONE: int
FAILED: int

def bind(get_copy_data: int, freemem: int, consume_input: int, /) -> None: ...
def read_rows(conn: int, chunk: bytearray, limit: int, sock: int, wait_s: float, /
              ) -> tuple[int, int]: ...
