// imapcopier: dialogs and local-time formatting
