"""The stream app: joins capture events with identities into deduplicated edges.

Pure stages (:mod:`streams.resolvestage`, :mod:`streams.mergestage`) do the
work; :mod:`streams.faustapp` runs them as a Faust app. It imports only the
``callmap`` core; see docs/streams.md.
"""
