"""lumibot integration: ``LazyBarsBacktesting``, a drop-in for ``PandasDataBacktesting``, and
``LazyBarsDataBentoBacktesting``, a drop-in for ``DataBentoDataBacktesting``.

Needs the ``lumibot`` extra (``pip install 'lazybars[lumibot]'``); ``import lazybars``
never imports this package or lumibot.

>>> from lazybars.lumibot import LazyBarsBacktesting
>>> LazyBarsBacktesting.SOURCE
'PANDAS'
"""

from lazybars.lumibot._databento import LazyBarsDataBentoBacktesting
from lazybars.lumibot._source import OFFLINE, LazyBarsBacktesting, store_symbol

__all__ = ["OFFLINE", "LazyBarsBacktesting", "LazyBarsDataBentoBacktesting", "store_symbol"]
