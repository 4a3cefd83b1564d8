"""Test-wide settings."""

import os

# pandas 3 keeps string labels in pyarrow arrays, and pyarrow's default allocator reserves
# about 1 GiB of address space on first use; memray counts that reservation as allocated
# memory, which would swamp every limit_memory marker. The system allocator reports the
# real allocations. (The README's memray section gives users the same advice.)
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
