"""Tables and pictures from stored results, with pandas and matplotlib only (never torch,
RecBole, Ray or POT): result tables over seeds (`tables`), the tuned leaderboard
(`leaderboard`) with its ASHA rung counts (`rungs`), learning curves (`curves`) and LDA's
anchors (`plots`)."""
