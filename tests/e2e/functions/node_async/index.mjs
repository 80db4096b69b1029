// ES module, async handler.
export const handler = async (event, context) => {
  console.log("node async handler got", JSON.stringify(event));
  await new Promise((resolve) => setTimeout(resolve, 10));
  return {
    kind: "async",
    echo: event,
    functionName: context.functionName,
    awsRequestId: context.awsRequestId,
    memoryLimitInMB: String(context.memoryLimitInMB),
    remaining: context.getRemainingTimeInMillis(),
    nodeMajor: Number(process.versions.node.split(".")[0]),
  };
};
