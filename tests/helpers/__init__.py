"""What tests share: brokers, clusters, sample objects and messages, fixtures' building blocks.

Test files import from here and never from each other.
"""
