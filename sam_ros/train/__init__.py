"""Training of the small MobileSAM-architecture model shipped with sam_ros (synthetic scenes)."""
