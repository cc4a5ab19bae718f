// Campaigns are CPU-bound and each uses the cores it is given; run them one after another.
[assembly: DoNotParallelize]
