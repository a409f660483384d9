//! The sentences the embedding benchmarks send (`benches/embed.rs`,
//! `benches/batching.rs`).

/// `n` sentences of mixed length, from a three-word query to a 50-word paragraph
/// (about 6 to 70 tokens), in a fixed shuffled order: consecutive sentences differ in
/// length as requests from different users do, so a batch of them pads.
pub fn sentences(n: usize) -> Vec<String> {
    let bases = [
        "cheap flights to lisbon",
        "how do I reset my password",
        "The model answers thousands of short sentences every day.",
        "Every request that arrives over HTTP or Kafka is a row of the same dataflow.",
        "weir serves graphs of models",
        "My order arrived two days late and the box was damaged, but the support team \
         replaced it without any questions and the new one works perfectly.",
        "best pizza near me open now",
        "The server batches rows from many connections, pads them to the longest text of \
         the batch, and runs one forward pass for all of them on a replica thread.",
        "Is this email a phishing attempt?",
        "A stream of labelled pages from the phishing data set trains the classifier online \
         while the graph keeps serving predictions, and every answer names the model version \
         that produced it, so a replay of the same stream gives the same answers.",
        "Thanks, that fixed it!",
        "Rows of an Arrow file are replayed one block at a time, in order, through the same graph.",
    ];
    let mut texts: Vec<String> = (0..n).map(|i| format!("{} ({})", bases[i % bases.len()], i / bases.len())).collect();
    // Fisher-Yates with a fixed linear congruential generator: the same order every run.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in (1..texts.len()).rev() {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        texts.swap(i, (state >> 33) as usize % (i + 1));
    }
    texts
}
