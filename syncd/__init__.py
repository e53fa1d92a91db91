"""syncd: two-way sync between Nextcloud/Pydio file trees and Storj buckets."""

__version__ = "0.1.0"
