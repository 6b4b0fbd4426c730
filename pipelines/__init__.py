"""Apache Beam pipelines of videonet, installed as ``videonet.pipelines``."""
