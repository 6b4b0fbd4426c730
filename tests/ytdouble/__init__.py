"""An offline YouTube for the tests, at the yt-dlp boundary: a deterministic world of search results
(:mod:`.world`) served over loopback HTTP as YouTube answers yt-dlp's search (:mod:`.search`: innertube
JSON through yt-dlp's own extractor and request machinery), and video pages and media as its download
path meets them (:mod:`.download`: yt-dlp's own messages through a plugin extractor)."""
